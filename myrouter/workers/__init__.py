"""Worker processes (``[mysql_variables] threads = N``): a supervisor and N workers, one proxy to the operator.

Start with :mod:`.supervisor` (what the supervisor owns and how it steers the workers), then
:mod:`.worker` (one worker), :mod:`.channel` (the messages between them), :mod:`.merge` (the stats
tables of every worker as one) and :mod:`.gtidboard` (causal reads across workers).
"""
