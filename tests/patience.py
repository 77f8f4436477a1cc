"""How long a test waits for something before it calls it a hang.

Never a time limit on the work itself: at load 12 on 2 cores a step takes ten times as long
as on a quiet machine, and a test must pass at either load (see issue 18). Only a hang takes
half an hour.
"""

HANG_S = 1800
