# question: reparameterization-trick
# expect: fail
# why: the scale goes through numpy, so no gradient reaches logvar
# reason: gradient
z = mu + torch.randn_like(mu) * torch.tensor(torch.exp(0.5 * logvar).detach().numpy())
