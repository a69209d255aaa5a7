# question: reparameterization-trick
# expect: fail
# why: a syntax error
# reason: SyntaxError
z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar
