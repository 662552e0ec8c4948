-- Every SQL statement jobs.services sends, by name (loaded once at import by jobs/services/sql.py).
--
-- Each entry is a "-- name: <statement_name>" line, then "--" lines saying what it does, then the
-- statement up to the next name. Comments inside a statement are part of it and reach PostgreSQL.
-- Entries marked "Fragment" are CTEs or SELECTs that Python joins into one statement (rounds.py).
-- Placeholders: %b binds server-side in binary (sql.fetch, the per-job statements); %s and
-- %(name)s go through Django's cursor.

-- name: insert_job
-- Records one job; a plain VALUES insert is about twice as fast as unnest for one row (enqueue, submit).
INSERT INTO jobs_job (id, type, queue, priority, args, kwargs, status, attempts, max_attempts, run_at,
                      timeout, backoff, owner_id, idempotency_key, error, worker, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, 0, %s, %s, %s, %s::jsonb, %s, %s, '', '', now(), now())
RETURNING seq, created_at

-- name: insert_jobs
-- Records many jobs in one statement; WITH ORDINALITY keeps seq in the input order (enqueue_many).
INSERT INTO jobs_job (id, type, queue, priority, args, kwargs, status, attempts, max_attempts, run_at,
                      timeout, backoff, owner_id, idempotency_key, error, worker, created_at, updated_at)
SELECT v.id, v.type, v.queue, v.priority, v.args::jsonb, v.kwargs::jsonb, v.status, 0,
       v.max_attempts, v.run_at, v.timeout, v.backoff::jsonb, %b, %b, '', '', now(), now()
FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::int[], %b::text[], %b::text[], %b::text[], %b::int[],
            %b::timestamptz[], %b::float8[], %b::text[])
     WITH ORDINALITY AS v(id, type, queue, priority, args, kwargs, status, max_attempts, run_at, timeout,
                          backoff, ord)
ORDER BY v.ord
RETURNING seq, created_at

-- name: claim_idempotency_key
-- Takes (owner, key) for a new job; a concurrent insert of the same key waits for the first to commit.
INSERT INTO jobs_idempotencykey (owner_id, key, fingerprint, job_id, created_at)
VALUES (%s, %s, %s, NULL, now()) ON CONFLICT ON CONSTRAINT idem_owner_key DO NOTHING
RETURNING id

-- name: read_idempotency_key
-- The request fingerprint and job of a key already taken, to tell a replay from a conflict.
SELECT fingerprint, job_id FROM jobs_idempotencykey WHERE key = %s
AND owner_id IS NOT DISTINCT FROM %s

-- name: link_idempotency_key
-- Points a freshly taken key at the job it created.
UPDATE jobs_idempotencykey SET job_id = %s WHERE id = %s

-- name: finish_attempts
-- Fragment: finishes the attempts of earlier pops, guarded by lease token and status, repeat-safe
-- (invariant 3); writes the attempt rows and, for failed jobs, the dead letter.
v AS (
    SELECT * FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
                         %b::timestamptz[], %b::timestamptz[])
        AS v(id, token, status, outcome, result, error, tb, finished_at, run_at)
), upd AS (
    -- A cancel request committed before this outcome wins (invariant 9), whatever the handler did
    -- (returned, raised, timed out, its worker died): cancelled, never retried, no dead letter. The
    -- request and this statement serialize on the row lock, so no clocks are compared: a request that
    -- loses the race finds the job finished and is refused. The lease token still fences the update.
    UPDATE jobs_job j
       SET status = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled' ELSE v.status END,
           result = CASE WHEN v.status = 'succeeded' THEN v.result::jsonb ELSE j.result END,
           error = CASE WHEN j.cancel_requested_at IS NULL OR v.status = 'cancelled' THEN v.error
                        WHEN v.error = '' THEN 'cancelled by an operator while running'
                        ELSE 'cancelled by an operator while running (' || v.error || ')' END,
           run_at = CASE WHEN j.cancel_requested_at IS NULL THEN COALESCE(v.run_at, j.run_at) ELSE j.run_at END,
           finished_at = CASE WHEN v.status = 'retrying' AND j.cancel_requested_at IS NULL THEN NULL
                              ELSE v.finished_at END,
           lease_token = NULL,
           updated_at = v.finished_at
      FROM v
     WHERE j.id = v.id AND j.lease_token = v.token AND j.status = 'running'
 RETURNING j.id, j.attempts, j.worker, j.started_at, j.status, j.error
), attempt AS (
    INSERT INTO jobs_jobattempt (job_id, number, worker, started_at, finished_at, outcome, error, traceback)
    SELECT upd.id, upd.attempts, upd.worker, upd.started_at, v.finished_at,
           CASE WHEN upd.status = 'cancelled' THEN 'cancelled' ELSE v.outcome END, upd.error, v.tb
      FROM upd JOIN v ON v.id = upd.id
    ON CONFLICT ON CONSTRAINT attempt_job_number_unique DO NOTHING
), dead AS (
    INSERT INTO jobs_deadletter (job_id, reason, errors, dead_at, resolution, resolved_at)
    SELECT upd.id, v.error,
           COALESCE((SELECT jsonb_agg(jsonb_build_object('attempt', a.number, 'outcome', a.outcome,
                                                         'error', a.error) ORDER BY a.number)
                       FROM jobs_jobattempt a WHERE a.job_id = upd.id AND a.number < upd.attempts),
                    '[]'::jsonb)
             || jsonb_build_array(jsonb_build_object('attempt', upd.attempts, 'outcome', v.outcome,
                                                     'error', v.error)),
           v.finished_at, '', NULL
      FROM upd JOIN v ON v.id = upd.id
     WHERE upd.status = 'failed'
    ON CONFLICT (job_id) DO UPDATE
       SET reason = EXCLUDED.reason, errors = EXCLUDED.errors, dead_at = EXCLUDED.dead_at,
           resolution = '', resolved_at = NULL
)

-- name: claim_pops
-- Fragment: claims the new pops (invariant 1): only runnable rows, or a repeat of this very claim.
popped AS (
    SELECT p.id, p.token, o.status AS previous
      FROM unnest(%b::uuid[], %b::text[]) AS p(id, token) JOIN jobs_job o ON o.id = p.id
), claim AS (
    UPDATE jobs_job j
       SET status = 'running',
           attempts = CASE WHEN j.lease_token = p.token THEN j.attempts ELSE j.attempts + 1 END,
           lease_token = p.token, worker = %b,
           started_at = CASE WHEN j.lease_token = p.token THEN j.started_at ELSE now() END, updated_at = now()
      FROM popped p
     WHERE j.id = p.id
       AND ((j.status IN ('queued', 'scheduled', 'retrying') AND j.cancel_requested_at IS NULL)
            -- already claimed with this very token: a repeat after a commit whose outcome was unknown
            OR (j.status = 'running' AND j.lease_token = p.token))
    RETURNING j.id, p.token, j.seq, j.type, j.queue, j.priority, j.args::text, j.kwargs::text, j.attempts,
              j.max_attempts, j.timeout, j.backoff::text, j.created_at, j.started_at, j.run_at, p.previous
)

-- name: finished_rows
-- Fragment: finish_attempts' rows flagged true (id and final status), padded to claim_pops' width.
SELECT true, id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, status FROM upd

-- name: claimed_rows
-- Fragment: claim_pops' rows flagged false.
SELECT false, * FROM claim

-- name: give_back
-- Returns claimed-but-unfinished jobs to their queue without charging the attempt (shutdown, hard kill).
UPDATE jobs_job j
   SET status = 'queued', attempts = GREATEST(j.attempts - 1, 0), lease_token = NULL,
       worker = '', started_at = NULL, updated_at = now()
  FROM unnest(%s::uuid[], %s::text[]) AS v(id, token)
 WHERE j.id = v.id AND j.lease_token = v.token AND j.status = 'running'
RETURNING j.id

-- name: delete_finished
-- Deletes one batch of finished jobs of a status older than a cutoff, never waiting on a locked row;
-- PostgreSQL's ON DELETE clauses remove their attempts and dead letters and clear links to them.
-- Selects the same jobs as count_finished: change both together.
WITH doomed AS (
    SELECT j.id FROM jobs_job j
     WHERE j.status = %(status)s AND COALESCE(j.finished_at, j.updated_at) < %(cutoff)s
       -- a failed job whose dead letter is still open stays: an operator has not decided about it yet
       AND (%(status)s <> 'failed'
            OR NOT EXISTS (SELECT 1 FROM jobs_deadletter d WHERE d.job_id = j.id AND d.resolution = ''))
     LIMIT %(limit)s FOR UPDATE OF j SKIP LOCKED
)
DELETE FROM jobs_job WHERE id IN (SELECT id FROM doomed)

-- name: count_finished
-- How many jobs delete_finished would remove, in all batches (the dry run of pruning).
SELECT count(*) FROM jobs_job j
 WHERE j.status = %(status)s AND COALESCE(j.finished_at, j.updated_at) < %(cutoff)s
   AND (%(status)s <> 'failed'
        OR NOT EXISTS (SELECT 1 FROM jobs_deadletter d WHERE d.job_id = j.id AND d.resolution = ''))
