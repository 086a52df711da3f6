"""The kernel layer: reference cells (:mod:`.reference`), cells as registered data
(:mod:`.cells`), the one BPTT driver (:mod:`.driver`) and its fast element-wise steps
(:mod:`.fast`). The public entry points are :mod:`nprnn.functional` and the layers."""

__all__ = ["cells", "driver", "fast", "reference"]
