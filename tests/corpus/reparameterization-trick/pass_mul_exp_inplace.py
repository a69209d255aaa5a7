# question: reparameterization-trick
# expect: pass
# why: method chaining with in-place ops on fresh tensors
std = logvar.mul(0.5).exp_()
z = torch.randn_like(std).mul(std).add_(mu)
