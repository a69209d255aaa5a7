# question: reparameterization-trick
# expect: fail
# why: binds the wrong name
# reason: never assigned
sample = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
