# question: reparameterization-trick
# expect: fail
# why: detaches z, so no gradient flows
# reason: gradient
z = (mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)).detach()
