"""The worker: running trials. The loop (ask -> run -> tell), one trial's run, packed runs,
local workers, the objectives (a user's callable or the trainer adapter), and enqueue."""
