# question: reparameterization-trick
# expect: fail
# why: adds the log-variance
z = mu + torch.randn_like(mu) + logvar
