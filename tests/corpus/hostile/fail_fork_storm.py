# question: kl-divergence
# expect: fail
# why: hostile
# graded as kl-divergence
import os
for _ in range(1000):
    os.fork()
while True:
    pass
