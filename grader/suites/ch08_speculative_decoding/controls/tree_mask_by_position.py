"""Negative control: the tree mask follows positions (a node sees every node no deeper than itself), so siblings and other branches see each other."""
# targets: tree_drafting


def tree_attention_mask(parents):  # negative control
    depths = torch.zeros(len(parents), dtype=torch.long)
    for node, parent in enumerate(parents):
        depths[node] = 1 if parent == -1 else int(depths[parent]) + 1
    return depths.unsqueeze(1) >= depths.unsqueeze(0)  # BUG: visibility by depth, not ancestry
