"""Negative control: pack_int4 puts column 2j in the HIGH nibble (the order the kernel and the
exported layers do not expect); unpack_int4 matches it, so a round trip alone looks fine."""
# targets: int_formats


def pack_int4(codes):  # negative control
    return (codes[..., 0::2] << 4) | codes[..., 1::2]  # BUG: swapped nibbles


def unpack_int4(packed):  # negative control
    high, low = packed >> 4, packed & 0x0F
    return torch.stack([high, low], dim=-1).reshape(*packed.shape[:-1], -1)
