"""Negative control: a node sees itself and its parent, not its parent's ancestors."""
# targets: tree_drafting


def tree_attention_mask(parents):  # negative control
    mask = torch.eye(len(parents), dtype=torch.bool)
    for i, parent in enumerate(parents):
        if not -1 <= parent < i:
            raise ValueError(f"node {i}'s parent {parent} must be -1 or a node before it")
        if parent >= 0:
            mask[i, parent] = True  # BUG: the grandparents are forgotten
    return mask
