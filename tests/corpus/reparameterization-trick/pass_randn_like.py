# question: reparameterization-trick
# expect: pass
# why: the textbook form
std = torch.exp(0.5 * logvar)
eps = torch.randn_like(std)
z = mu + eps * std
