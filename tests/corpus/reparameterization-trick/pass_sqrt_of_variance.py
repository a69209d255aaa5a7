# question: reparameterization-trick
# expect: pass
# why: standard deviation as the square root of the variance
sigma = logvar.exp().sqrt()
noise = torch.randn(mu.shape, dtype=mu.dtype)
z = noise * sigma + mu
