# question: kl-divergence
# expect: pass
# why: torch.distributions.kl_divergence
q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
kl = torch.distributions.kl_divergence(q, p).sum()
