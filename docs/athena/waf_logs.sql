-- The ALB web ACL's WAF logs (delivered to S3) as an Athena table, for rmsops's security.waf.blocks
-- (environment file: athena.database and athena.waf_table; see README, "Large logs"). With it, the
-- ALB's WAF blocks are counted here instead of in the logs.waf log group; CloudFront's WAF
-- (logs.waf_cloudfront) is still read from CloudWatch Logs.
--
-- AWS's documented table for WAF logs in S3 with partition projection (Athena User Guide: "Create a
-- table for AWS WAF S3 logs in Athena using partition projection"): the JSON SerDe (it matches the
-- records' camelCase keys to these lower-case columns), and the delivery folder
-- (yyyy/MM/dd/HH/mm) projected as the partition `log_time`, so a query that names its minutes
-- reads only their folders. rmsops queries `timestamp`, `action`, `terminatingruleid` and
-- `httprequest` (clientip, uri).
--
-- Replace <BUCKET> (aws-waf-logs-...), <ACCOUNT_ID>, <REGION>, <WEB_ACL_NAME>, and the first minute
-- of projection.log_time.range (when logging began: Athena plans every projected minute, so a far
-- start makes every query slower). Then run it in Athena.
CREATE EXTERNAL TABLE IF NOT EXISTS waf_logs (
    `timestamp` bigint,
    `formatversion` int,
    `webaclid` string,
    `terminatingruleid` string,
    `terminatingruletype` string,
    `action` string,
    `terminatingrulematchdetails` array<struct<conditiontype:string,sensitivitylevel:string,location:string,matcheddata:array<string>>>,
    `httpsourcename` string,
    `httpsourceid` string,
    `rulegrouplist` array<struct<rulegroupid:string,terminatingrule:struct<ruleid:string,action:string,rulematchdetails:array<struct<conditiontype:string,sensitivitylevel:string,location:string,matcheddata:array<string>>>>,nonterminatingmatchingrules:array<struct<ruleid:string,action:string,overriddenaction:string,rulematchdetails:array<struct<conditiontype:string,sensitivitylevel:string,location:string,matcheddata:array<string>>>,challengeresponse:struct<responsecode:string,solvetimestamp:string>,captcharesponse:struct<responsecode:string,solvetimestamp:string>>>,excludedrules:string>>,
    `ratebasedrulelist` array<struct<ratebasedruleid:string,limitkey:string,maxrateallowed:int>>,
    `nonterminatingmatchingrules` array<struct<ruleid:string,action:string,rulematchdetails:array<struct<conditiontype:string,sensitivitylevel:string,location:string,matcheddata:array<string>>>,challengeresponse:struct<responsecode:string,solvetimestamp:string>,captcharesponse:struct<responsecode:string,solvetimestamp:string>>>,
    `requestheadersinserted` array<struct<name:string,value:string>>,
    `responsecodesent` string,
    `httprequest` struct<clientip:string,country:string,headers:array<struct<name:string,value:string>>,uri:string,args:string,httpversion:string,httpmethod:string,requestid:string,fragment:string,scheme:string,host:string>,
    `labels` array<struct<name:string>>,
    `captcharesponse` struct<responsecode:string,solvetimestamp:string,failurereason:string>,
    `challengeresponse` struct<responsecode:string,solvetimestamp:string,failurereason:string>,
    `ja3fingerprint` string,
    `ja4fingerprint` string,
    `oversizefields` string,
    `requestbodysize` int,
    `requestbodysizeinspectedbywaf` int
)
PARTITIONED BY (
    `log_time` string
)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
WITH SERDEPROPERTIES (
    'ignore.malformed.json' = 'true'
)
STORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'
OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION 's3://<BUCKET>/AWSLogs/<ACCOUNT_ID>/WAFLogs/<REGION>/<WEB_ACL_NAME>/'
TBLPROPERTIES (
    'projection.enabled' = 'true',
    'projection.log_time.type' = 'date',
    'projection.log_time.range' = '2026/01/01/00/00,NOW',
    'projection.log_time.format' = 'yyyy/MM/dd/HH/mm',
    'projection.log_time.interval' = '1',
    'projection.log_time.interval.unit' = 'minutes',
    'storage.location.template' = 's3://<BUCKET>/AWSLogs/<ACCOUNT_ID>/WAFLogs/<REGION>/<WEB_ACL_NAME>/${log_time}'
);
