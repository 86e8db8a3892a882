-- order_by: customer_id, as_of_date
-- Time-weighted customer-manager assignment (管户): for each month in the warehouse and customer, the days
-- of the month (first of the month to the as-of date, inclusive) each manager held the customer and
-- their share of the month's days. Read from the latest snapshot of the assignment history (each
-- extract holds the full history); start and end dates are inclusive, an empty end date is open.
-- The numbers of a merged customer are pooled. Where assignments of a customer overlap, each day goes
-- to the assignment that started last (then the highest assignment_no), so a customer has at most one
-- manager a day and the shares of a customer-month add up to at most 1. share is rounded down to 6
-- decimals (so the sum stays <= 1 exactly); days is exact. Not partitioned by date: every month reads
-- the latest history, so the table is rebuilt whole (one pass over the latest snapshot).
WITH months AS (
    SELECT DISTINCT
        as_of_date,
        CAST(date_trunc('month', as_of_date) AS DATE) AS month_start
    FROM stg_manager_assignment
),
span AS (
    SELECT min(month_start) AS lo, max(as_of_date) AS hi FROM months
),
asg AS (
    SELECT
        m.customer_id,
        s.assignment_no,
        s.staff_no,
        s.start_date,
        coalesce(s.end_date, DATE '9999-12-30') AS end_date
    FROM stg_manager_assignment AS s
    JOIN core_cust_no_map AS m ON m.cust_no = s.cust_no
    CROSS JOIN span
    WHERE s.as_of_date = span.hi
      AND s.start_date <= span.hi
      AND (s.end_date IS NULL OR s.end_date >= span.lo)
      AND (s.end_date IS NULL OR s.end_date >= s.start_date)
),
-- elementary segments between the customer's assignment boundaries
pts AS (
    SELECT customer_id, start_date AS p FROM asg
    UNION
    SELECT customer_id, CAST(end_date + INTERVAL 1 DAY AS DATE) AS p FROM asg
),
seg AS (
    SELECT
        customer_id,
        p AS seg_start,
        CAST(lead(p) OVER (PARTITION BY customer_id ORDER BY p) - INTERVAL 1 DAY AS DATE) AS seg_end
    FROM pts
),
held AS (
    SELECT
        s.customer_id,
        s.seg_start,
        s.seg_end,
        a.staff_no,
        row_number() OVER (
            PARTITION BY s.customer_id, s.seg_start ORDER BY a.start_date DESC, a.assignment_no DESC
        ) AS rk
    FROM seg AS s
    JOIN asg AS a
      ON a.customer_id = s.customer_id AND a.start_date <= s.seg_start AND a.end_date >= s.seg_end
    WHERE s.seg_end IS NOT NULL
),
days AS (
    SELECT
        mo.as_of_date,
        h.customer_id,
        h.staff_no,
        sum(date_diff('day', greatest(h.seg_start, mo.month_start), least(h.seg_end, mo.as_of_date)) + 1)
            AS days,
        date_diff('day', mo.month_start, mo.as_of_date) + 1 AS month_days
    FROM held AS h
    JOIN months AS mo ON h.seg_start <= mo.as_of_date AND h.seg_end >= mo.month_start
    WHERE h.rk = 1
    GROUP BY mo.as_of_date, mo.month_start, h.customer_id, h.staff_no
)
SELECT
    as_of_date,
    customer_id,
    staff_no,
    CAST(floor(days * 1000000.0 / month_days) / 1000000 AS DECIMAL(9, 6)) AS share,
    CAST(days AS INTEGER) AS days
FROM days
