# question: kl-divergence
# expect: fail
# why: hostile
# graded as kl-divergence
class Liar(torch.Tensor):
    def __eq__(self, other):
        return True
kl = torch.tensor(0.0).as_subclass(Liar)
