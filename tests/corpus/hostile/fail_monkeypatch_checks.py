# question: kl-divergence
# expect: fail
# why: hostile
# graded as kl-divergence
torch.allclose = lambda *a, **k: True
torch.isclose = lambda a, b, **k: torch.ones_like(a, dtype=torch.bool)
kl = torch.tensor(0.0)
