# question: reparameterization-trick
# expect: pass
# why: an Independent Normal
dist = torch.distributions.Independent(torch.distributions.Normal(loc=mu, scale=(logvar / 2).exp()), 1)
z = dist.rsample()
