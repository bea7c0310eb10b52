// Copy-as-curl and copy-as-boto3: start the same state machine with the same input against
// this server. The key is read from the environment, never written into the snippet.

function shellQuote(text) {
  return `'${String(text).replace(/'/g, `'\\''`)}'`;
}

function pyString(text) {
  return JSON.stringify(String(text)); // a JSON string literal is a valid Python literal
}

export function curlStart(stateMachine, input, name) {
  const body = { input };
  if (name) body.name = name;
  const url = `${location.origin}/api/v1/state-machines/${encodeURIComponent(stateMachine)}/executions`;
  return [
    `curl -X POST ${shellQuote(url)} \\`,
    `  -H 'Content-Type: application/json' \\`,
    `  -H "Authorization: Bearer $STATEWRIGHT_API_KEY" \\`,
    `  --data-binary ${shellQuote(JSON.stringify(body))}`,
  ].join('\n');
}

export function boto3Start(stateMachineArn, input, name) {
  const region = (String(stateMachineArn).split(':')[3]) || 'us-east-1';
  return [
    'import json, os',
    'import boto3',
    '',
    '# STATEWRIGHT_API_KEY="ID:SECRET" (statewright keys create); any values on a dev server',
    'key_id, _, secret = os.environ.get("STATEWRIGHT_API_KEY", "x:x").partition(":")',
    'sfn = boto3.client(',
    '    "stepfunctions",',
    `    endpoint_url=${pyString(location.origin)},`,
    `    region_name=${pyString(region)},`,
    '    aws_access_key_id=key_id,',
    '    aws_secret_access_key=secret,',
    ')',
    'started = sfn.start_execution(',
    `    stateMachineArn=${pyString(stateMachineArn)},`,
    ...(name ? [`    name=${pyString(name)},`] : []),
    `    input=json.dumps(json.loads(${pyString(JSON.stringify(input ?? null))})),`,
    ')',
    'print(started["executionArn"])',
  ].join('\n');
}
