# question: kl-divergence
# expect: fail
# why: hostile
# reason: time limit
# graded as kl-divergence
import time
time.sleep(60)
