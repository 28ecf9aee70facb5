// OpenAI's npm client against ra-serve-inproc: node openai_client_test.mjs BASE_URL MODEL
// Every check throws on failure (node exits non-zero); prints one line per check.
import assert from "node:assert/strict";
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey: "unused", maxRetries: 0, timeout: 60_000 });

async function metric(sample) {
  const text = await (await fetch(`${baseURL}/metrics`)).text();
  for (const line of text.split("\n")) {
    const at = line.lastIndexOf(" ");
    if (line.slice(0, at) === sample) return Number(line.slice(at + 1));
  }
  return 0;
}

async function until(condition, what, ms = 5000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`timed out waiting for ${what}`);
}

async function check(name, fn) {
  await fn();
  console.log(`ok - ${name}`);
}

await check("models.list", async () => {
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), [model]);
});

let completionText;
await check("completions.create", async () => {
  const c = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 8, temperature: 0 });
  assert.equal(c.object, "text_completion");
  assert.equal(typeof c.choices[0].text, "string");
  assert.equal(c.choices[0].finish_reason, "length");
  assert.equal(c.usage.completion_tokens, 8);
  assert.equal(c.usage.total_tokens, c.usage.prompt_tokens + 8);
  completionText = c.choices[0].text;
});

await check("completions.create stream", async () => {
  const stream = await client.completions.create({
    model, prompt: "Once upon a time", max_tokens: 8, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  });
  let text = "", finish = null, usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      text += choice.text;
      finish = choice.finish_reason ?? finish;
    }
  }
  assert.equal(text, completionText);
  assert.equal(finish, "length");
  assert.equal(usage.completion_tokens, 8);
});

let chatText;
const messages = [{ role: "system", content: "Be brief." }, { role: "user", content: "Say something." }];
await check("chat.completions.create", async () => {
  const c = await client.chat.completions.create({ model, messages, max_tokens: 6, temperature: 0, seed: 3 });
  assert.equal(c.object, "chat.completion");
  assert.equal(c.choices[0].message.role, "assistant");
  assert.equal(typeof c.choices[0].message.content, "string");
  assert.equal(c.usage.completion_tokens, 6);
  chatText = c.choices[0].message.content;
});

await check("chat.completions.create stream", async () => {
  const stream = await client.chat.completions.create({ model, messages, max_tokens: 6, temperature: 0, stream: true });
  let text = "", role = null, finish = null;
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    role = choice.delta.role ?? role;
    text += choice.delta.content ?? "";
    finish = choice.finish_reason ?? finish;
  }
  assert.equal(role, "assistant");
  assert.equal(text, chatText);
  assert.equal(finish, "length");
});

await check("a cancelled stream stops the generation", async () => {
  const sample = 'ra_requests_total{endpoint="completions",outcome="cancelled"}';
  const before = await metric(sample);
  const controller = new AbortController();
  const stream = await client.completions.create(
    { model, prompt: "A long story:", max_tokens: 3000, temperature: 0, stream: true },
    { signal: controller.signal });
  let chunks = 0;
  for await (const chunk of stream) {  // an aborted stream ends the loop quietly
    if (chunk.choices.length && ++chunks === 3) controller.abort();
  }
  assert.ok(chunks >= 3 && chunks < 3000, `${chunks} chunks`);
  await until(async () => (await metric(sample)) === before + 1, "the cancelled request to be counted");
  await until(async () => (await metric("ra_requests_running")) === 0, "the decode stream to stop");
  const generated = await metric("ra_generated_tokens_total");
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await metric("ra_generated_tokens_total"), generated, "tokens were still generated");
});

await check("errors are the client's typed exceptions", async () => {
  await assert.rejects(client.completions.create({ model, prompt: "x", temperature: 5 }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, e.constructor.name);
    assert.equal(e.status, 400);
    assert.equal(e.param, "temperature");
    return true;
  });
  await assert.rejects(client.completions.create({ model: "nope", prompt: "x" }), (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError, e.constructor.name);
    assert.equal(e.code, "model_not_found");
    return true;
  });
  await assert.rejects(client.chat.completions.create({ model, messages: [{ role: "tool", content: "x" }] }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === "messages[0].role");
});

await check("the server still answers", async () => {
  const c = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 8, temperature: 0 });
  assert.equal(c.choices[0].text, completionText);
});
