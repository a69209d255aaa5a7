# question: reparameterization-trick
# expect: fail
# why: collapses the latent dimension
# reason: shape
z = mu.mean(1, keepdim=True) + torch.randn(mu.size(0), 1)
