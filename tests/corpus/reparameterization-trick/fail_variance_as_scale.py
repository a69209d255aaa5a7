# question: reparameterization-trick
# expect: fail
# why: uses the variance where the standard deviation belongs
# reason: spread
std = torch.exp(logvar)
z = mu + torch.randn_like(std) * std
