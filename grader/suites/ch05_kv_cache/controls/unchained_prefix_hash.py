"""Negative control: a block's hash covers only its own tokens, not the prefix before it."""
# targets: prefix_cache


def chained_block_hashes(token_ids, block_size):  # negative control
    hashes = []
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        block = token_ids[start:start + block_size]
        digest = hashlib.sha256(",".join(map(str, block)).encode()).digest()  # BUG: not chained
        hashes.append(int.from_bytes(digest[:8], "little"))
    return hashes
