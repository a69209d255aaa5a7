# question: codebook-flatten
# expect: pass
# why: torch.movedim
flat_z = torch.movedim(z, 1, -1).reshape(-1, z.shape[1])
