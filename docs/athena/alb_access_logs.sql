-- ALB access logs as an Athena table, for rmsops's security.alb.access_logs (environment file:
-- athena.database and athena.alb_table; see README, "Large logs").
--
-- Based on AWS's documented table for ALB access logs with partition projection (Athena User
-- Guide: "Create the table for ALB access logs in Athena using partition projection"): the same
-- columns, a RegexSerDe, and the day folder (yyyy/MM/dd) projected as the partition `day`, so a
-- query that names its days reads only their folders. The regex is rmsops's
-- (rmsops/sources/alblogs.py, LINE_REGEX; a test checks that this file carries it): a quoted field
-- may hold escaped characters (ALB writes a double quote as \x22), and the fields after the user
-- agent are optional, so a line of an older or newer format still counts. Without Athena, rmsops
-- reads the same columns with the same regex in DuckDB.
--
-- Replace <BUCKET>, <PREFIX> (the ALB's access_logs.s3.prefix; drop "<PREFIX>/" when it has none),
-- <ACCOUNT_ID>, <REGION>, and the first day of projection.day.range (the day logging began: Athena
-- plans every projected day, so a far start makes every query slower). Then run it in Athena.
CREATE EXTERNAL TABLE IF NOT EXISTS alb_access_logs (
    type string,
    time string,
    elb string,
    client_ip string,
    client_port int,
    target_ip string,
    target_port int,
    request_processing_time double,
    target_processing_time double,
    response_processing_time double,
    elb_status_code int,
    target_status_code string,
    received_bytes bigint,
    sent_bytes bigint,
    request_verb string,
    request_url string,
    request_proto string,
    user_agent string,
    ssl_cipher string,
    ssl_protocol string,
    target_group_arn string,
    trace_id string,
    domain_name string,
    chosen_cert_arn string,
    matched_rule_priority string,
    request_creation_time string,
    actions_executed string,
    redirect_url string,
    lambda_error_reason string,
    target_port_list string,
    target_status_code_list string,
    classification string,
    classification_reason string,
    conn_trace_id string
)
PARTITIONED BY (
    day string
)
ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.RegexSerDe'
WITH SERDEPROPERTIES (
    'serialization.format' = '1',
    'input.regex' = '^([^ ]*) ([^ ]*) ([^ ]*) ([^ ]*):([0-9]*) ([^ ]*)[:-]([0-9]*) ([-.0-9]*) ([-.0-9]*) ([-.0-9]*) (|[-0-9]*) (-|[-0-9]*) ([-0-9]*) ([-0-9]*) \"([^ \"]*) ((?:[^\"\\\\]|\\\\.)*?) (- |[^ \"]*)\" \"((?:[^\"\\\\]|\\\\.)*)\"(?: ([^ ]*)(?: ([^ ]*)(?: ([^ ]*)(?: \"((?:[^\"\\\\]|\\\\.)*)\"(?: \"((?:[^\"\\\\]|\\\\.)*)\"(?: \"((?:[^\"\\\\]|\\\\.)*)\"(?: ([^ ]*)(?: ([^ ]*)(?: \"((?:[^\"\\\\]|\\\\.)*)\"(?: \"((?:[^\"\\\\]|\\\\.)*)\"(?: \"((?:[^\"\\\\]|\\\\.)*)\"(?: \"((?:[^\"\\\\]|\\\\.)*)\"(?: \"((?:[^\"\\\\]|\\\\.)*)\"(?: \"((?:[^\"\\\\]|\\\\.)*)\"(?: \"((?:[^\"\\\\]|\\\\.)*)\"(?: ([^ ]*))?)?)?)?)?)?)?)?)?)?)?)?)?)?)?)?(?: .*)?$'
)
LOCATION 's3://<BUCKET>/<PREFIX>/AWSLogs/<ACCOUNT_ID>/elasticloadbalancing/<REGION>/'
TBLPROPERTIES (
    'projection.enabled' = 'true',
    'projection.day.type' = 'date',
    'projection.day.range' = '2026/01/01,NOW',
    'projection.day.format' = 'yyyy/MM/dd',
    'projection.day.interval' = '1',
    'projection.day.interval.unit' = 'DAYS',
    'storage.location.template' = 's3://<BUCKET>/<PREFIX>/AWSLogs/<ACCOUNT_ID>/elasticloadbalancing/<REGION>/${day}'
);
