# question: kl-divergence
# expect: fail
# why: hostile
# graded as kl-divergence
import os
os._exit(0)
