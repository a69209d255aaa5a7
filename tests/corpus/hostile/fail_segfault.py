# question: kl-divergence
# expect: fail
# why: hostile
# graded as kl-divergence
import ctypes
ctypes.string_at(0)
