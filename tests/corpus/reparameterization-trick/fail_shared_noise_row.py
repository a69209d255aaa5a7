# question: reparameterization-trick
# expect: fail
# why: one noise row shared by the whole batch
# reason: shared or correlated
eps = torch.randn(1, mu.size(1))
z = mu + eps * torch.exp(0.5 * logvar)
