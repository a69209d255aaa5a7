# question: reparameterization-trick
# expect: fail
# why: fixes the seed, so every run draws the same noise
# reason: identical
torch.manual_seed(0)
z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
