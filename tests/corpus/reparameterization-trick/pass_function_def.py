# question: reparameterization-trick
# expect: pass
# why: wrapped in a helper function
def reparameterize(mu, logvar):
    std = torch.exp(logvar / 2)
    return mu + std * torch.randn_like(std)

z = reparameterize(mu, logvar)
