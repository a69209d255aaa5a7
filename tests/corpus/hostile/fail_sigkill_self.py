# question: kl-divergence
# expect: fail
# why: hostile
# graded as kl-divergence
import os, signal
os.kill(os.getpid(), signal.SIGKILL)
