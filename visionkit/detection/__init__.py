"""Code several region-based heads share, for built-in and third-party heads alike.

Import the submodules (this package imports nothing, so :mod:`.params` stays torch-free):

* :mod:`.params` -- box-coder and smooth-L1 defaults and the region heads' parameter checks (no torch);
* :mod:`.layers` -- the default output layers: :class:`~.layers.SoftmaxClassifier`,
  :class:`~.layers.BoxRegression` and their pair :class:`~.layers.RegionPredictor`
  (``cls_score``/``bbox_pred``, torchvision's ``FastRCNNPredictor`` interface);
* :mod:`.compose` -- completing a configured output layer into a region predictor (:func:`~.compose.produces`,
  :func:`~.compose.region_predictor`) and reading its box coding (:func:`~.compose.box_coding`);
* :mod:`.svm` -- R-CNN's one-vs-rest linear SVMs and hard-negative mining;
* :mod:`.sampling` -- Fast R-CNN's RoI sampling;
* :mod:`.region_head` -- what proposal-based heads share: part checks, the proposal source (with the
  on-disk cache), :class:`~.region_head.RegionHeadMixin` (proposals, sampling, multi-task loss, postprocessing).

Boxes are ``xyxy`` float32 in absolute pixels everywhere; ``num_classes`` counts the background as class 0.
"""
