"""Video: frame sources (:mod:`.io`), the tracking steps (:mod:`.tracking`), a session's state
(:mod:`.state`) and the ``samkit track`` output folder (:mod:`.output`). The predictor itself is
:class:`samkit.VideoPredictor`."""
