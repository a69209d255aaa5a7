# question: kl-divergence
# expect: fail
# why: a Python float, not a differentiable tensor
kl = (-0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())).item()
