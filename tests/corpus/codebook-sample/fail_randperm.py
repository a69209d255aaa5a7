# question: codebook-sample
# expect: fail
# why: 16 distinct codes (a permutation), so no code can ever repeat within a draw
# reason: not drawn with replacement
indices = torch.randperm(512)[:16]
z_q = model.codebook(indices)
