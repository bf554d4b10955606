-- Issue #16 (operator dashboard): a tick records the cron expression it ran on and the
-- schedule's next firing, so the dashboard (served by the API, which does not know the
-- scheduler's flags) can show "every 10 minutes, UTC" and when the next tick is due.
ALTER TABLE scheduler_ticks ADD COLUMN schedule text;
ALTER TABLE scheduler_ticks ADD COLUMN next_tick_at timestamptz;
