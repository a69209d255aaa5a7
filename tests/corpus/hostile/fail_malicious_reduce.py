# question: kl-divergence
# expect: fail
# why: hostile
# graded as kl-divergence
import os
class Evil:
    def __reduce__(self):
        return (os.system, ('touch /tmp/vaequiz-pwned',))
kl = Evil()
