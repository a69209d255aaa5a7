# question: reparameterization-trick
# expect: fail
# why: a NameError
# reason: NameError
std = torch.exp(0.5 * logvar)
z = mu + torch.randn_like(sd) * std
