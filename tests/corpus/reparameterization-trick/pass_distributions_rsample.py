# question: reparameterization-trick
# expect: pass
# why: torch.distributions with a reparameterized sample
z = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).rsample()
