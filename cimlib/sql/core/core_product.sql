-- order_by: product_code
-- The product catalogue as of the latest loaded date that has one.
SELECT p.* EXCLUDE (as_of_date), p.as_of_date AS catalogue_date
FROM stg_product AS p
WHERE p.as_of_date = (SELECT max(as_of_date) FROM stg_product)
