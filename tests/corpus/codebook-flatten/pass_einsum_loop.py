# question: codebook-flatten
# expect: pass
# why: an explicit loop in row-major order
rows = []
for b in range(z.shape[0]):
    for h in range(z.shape[2]):
        for w in range(z.shape[3]):
            rows.append(z[b, :, h, w])
flat_z = torch.stack(rows)
