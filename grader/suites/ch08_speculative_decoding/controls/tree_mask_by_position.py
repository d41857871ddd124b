"""Negative control: the tree mask follows positions (a node sees every node no deeper than itself), so siblings and other branches see each other."""
# targets: tree_drafting


def tree_attention_mask(parents):  # negative control
    depth = []
    for parent in parents:
        depth.append(1 if parent < 0 else depth[parent] + 1)
    depth = torch.tensor(depth)
    return depth[None, :] <= depth[:, None]  # BUG: visibility by depth, not ancestry
