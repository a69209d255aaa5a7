# question: reparameterization-trick
# expect: pass
# why: a reparametrize method that halves logvar in place before exponentiating it
def reparametrize(mu, logvar):
    logvar.mul_(0.5)
    std = logvar.exp()
    return mu + std * torch.randn_like(std)


z = reparametrize(mu, logvar)
