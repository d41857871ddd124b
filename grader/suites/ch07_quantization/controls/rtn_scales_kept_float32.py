"""Negative control: Int4Linear keeps its scales in float32 (the wrong dtype: twice the bytes
of the float16 the W4A16 format and the kernel use)."""
# targets: rtn

_reference_int4_init = Int4Linear.__init__


def _float32_scales_init(self, packed, scales, zeros, group_size):  # negative control
    _reference_int4_init(self, packed, scales, zeros, group_size)
    self.scales = scales.float()  # BUG: float32 scales


Int4Linear.__init__ = _float32_scales_init
