# question: kl-divergence
# expect: fail
# why: hostile
# graded as kl-divergence
text = open('question_bank/reparameterization.yaml').read()
kl = torch.tensor(float(len(text)))
