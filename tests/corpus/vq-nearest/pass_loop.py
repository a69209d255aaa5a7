# question: vq-nearest
# expect: pass
# why: a loop over rows
found = []
for row in flat_z:
    found.append(int(torch.norm(codebook - row, dim=1).argmin()))
indices = torch.tensor(found, dtype=torch.long)
