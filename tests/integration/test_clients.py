"""The client libraries people point at inhouse, against a live ``inhouse serve`` on the packaged models (SmolLM2 for
text, Qwen2.5-Coder 0.5B where a chat template with tools is needed, e5 for embeddings): the ``openai`` SDK,
LangChain (``langchain-openai`` and ``inhouse.integrations.langchain``), LlamaIndex ``OpenAILike`` and litellm.

Every answer the OpenAI SDK (and so LangChain and LlamaIndex, which use it) receives is also validated against
OpenAI's published OpenAPI description, streamed events included: their HTTP clients carry a response hook.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from served import BIN, serve

from inhouse.testing.openapi import OpenAISpec

pytestmark = pytest.mark.integration

SMOL = "smollm2-135m"
QWEN = "qwen2.5-coder-0.5b"
E5 = "multilingual-e5-small"
LEAVE = ("# Leave policy\n\nEvery employee of Example Corp gets 25 days of paid annual leave per calendar year. "
         "Unused leave days may be carried over until the end of March.\n")
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


class Validated:
    """An httpx response hook checking every OpenAI-route answer against the description; counts what it checked."""

    ROUTES = ("/chat/completions", "/completions", "/responses", "/embeddings", "/models")

    def __init__(self, spec: OpenAISpec) -> None:
        self.spec = spec
        self.checked: dict[str, int] = {}

    def __call__(self, response: httpx.Response) -> None:
        path = response.request.url.path.removeprefix("/v1")
        if not path.startswith(self.ROUTES):
            return
        response.read()
        method = response.request.method
        if response.status_code != 200:
            self.spec.check_error(response.json())
            return
        template = "/models/{model}" if path.startswith("/models/") else (
            "/responses/{response_id}" if path.startswith("/responses/") else path)
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            events = [json.loads(line[6:]) for line in response.text.splitlines()
                      if line.startswith("data: ") and line != "data: [DONE]"]
            self.spec.check_stream(method, template, events)
        elif method != "DELETE":
            self.spec.check(method, template, response.json())
        self.checked[template] = self.checked.get(template, 0) + 1


@dataclass
class Server:
    url: str
    key: str
    validated: Validated

    @property
    def base(self) -> str:
        return self.url + "/v1"

    def http(self) -> httpx.Client:
        return httpx.Client(event_hooks={"response": [self.validated]}, timeout=120)

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base, api_key=self.key, max_retries=0, http_client=self.http())

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.base + path, json=body, timeout=120, headers={"Authorization": f"Bearer {self.key}"})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           seed_pulled_model: Callable[[str, Path], None]) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("clients")
    seed_pulled_model(QWEN, data)
    env = {**os.environ, "INHOUSE_DATA_DIR": str(data), "INHOUSE_KB__MIN_SIMILARITY": "0.5",
           "INHOUSE_KB__COVERAGE_CHECK": "false", "COLUMNS": "200"}

    def cli(*args: str) -> str:
        done = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    cli("models", "pull", QWEN)
    key = cli("keys", "create", "--name", "clients", "--role", "admin").strip().splitlines()[-1].strip()
    with serve(env, SMOL) as url:
        srv = Server(url, key, Validated(OpenAISpec.load()))
        h = {"Authorization": f"Bearer {key}"}
        made = httpx.post(url + "/v1/collections", json={"name": "hr"}, headers=h, timeout=60)
        assert made.status_code == 201, made.text
        up = httpx.post(url + f"/v1/collections/{made.json()['id']}/documents", headers=h, timeout=300,
                        files={"file": ("leave.md", LEAVE.encode(), "text/markdown")})
        assert up.status_code == 201, up.text
        yield srv


# -- the openai SDK ------------------------------------------------------------------------------------------


def test_openai_sdk_chat_stream_models_logprobs_and_n(server: Server) -> None:
    client = server.openai()
    messages = [{"role": "user", "content": "What is the capital of France? One word."}]
    reply = client.chat.completions.create(model=SMOL, messages=messages, max_tokens=12, temperature=0)  # type: ignore[arg-type]
    assert "paris" in (reply.choices[0].message.content or "").lower()
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=SMOL, messages=messages, max_tokens=12, temperature=0, stream=True) if c.choices)  # type: ignore[arg-type]
    assert text == reply.choices[0].message.content
    assert client.models.retrieve(SMOL).id == SMOL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
    scored = client.chat.completions.create(model=SMOL, messages=messages, max_tokens=4, temperature=0,  # type: ignore[arg-type]
                                            logprobs=True, top_logprobs=3)
    content = scored.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content and all(t.logprob <= 0 and len(t.top_logprobs) == 3 for t in content)
    assert content[0].top_logprobs[0].token == content[0].token, "greedy: the chosen token is the most likely"
    two = client.chat.completions.create(model=SMOL, messages=messages, max_tokens=8, n=2, seed=3)  # type: ignore[arg-type]
    assert [c.index for c in two.choices] == [0, 1] and all(c.message.content for c in two.choices)
    comp = client.completions.create(model=SMOL, prompt=["The sky is", "Grass is"], max_tokens=4, temperature=0,
                                     echo=True, logprobs=1)
    assert comp.choices[0].text.startswith("The sky is") and comp.choices[1].text.startswith("Grass is")
    assert comp.choices[0].logprobs.token_logprobs[0] is None  # type: ignore[union-attr]


def test_openai_sdk_responses(server: Server) -> None:
    client = server.openai()
    first = client.responses.create(model=SMOL, input="My favourite colour is green.", max_output_tokens=24,
                                    temperature=0)
    assert first.status in ("completed", "incomplete") and first.output_text and first.usage is not None
    follow = client.responses.create(model=SMOL, input="What is my favourite colour?", previous_response_id=first.id,
                                     max_output_tokens=16, temperature=0)
    assert follow.output_text and follow.usage is not None
    # The stored conversation (question and answer) came before the new input, and its KV from the prefix cache.
    assert follow.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert follow.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens - 1
    kinds = [e.type for e in client.responses.create(model=SMOL, input="Say hello.", max_output_tokens=8,
                                                     stream=True)]
    assert kinds[0] == "response.created" and kinds[-1] in ("response.completed", "response.incomplete")
    assert "response.output_text.delta" in kinds
    assert client.responses.retrieve(first.id).id == first.id


def test_openai_sdk_tools_in_chat_and_responses(server: Server) -> None:
    client = server.openai()
    ask = [{"role": "user", "content": "What is the weather in Paris right now?"}]
    reply = client.chat.completions.create(model=QWEN, messages=ask, tools=[WEATHER], max_tokens=64, temperature=0)  # type: ignore[arg-type, list-item]
    call = reply.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    fn = WEATHER["function"]
    resp = client.responses.create(model=QWEN, input="What is the weather in Paris right now?", temperature=0,
                                   tools=[{"type": "function", "name": fn["name"], "description": fn["description"],  # type: ignore[index]
                                           "parameters": fn["parameters"], "strict": False}], max_output_tokens=64)  # type: ignore[index]
    calls = [o for o in resp.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    answer = client.responses.create(model=QWEN, previous_response_id=resp.id, max_output_tokens=40, temperature=0,
                                     input=[{"type": "function_call_output", "call_id": calls[0].call_id,
                                             "output": json.dumps({"city": "Paris", "sky": "sunny", "celsius": 21})}])
    assert "21" in answer.output_text or "sunny" in answer.output_text.lower()


def test_openai_sdk_tool_choice_forces_the_call(server: Server) -> None:
    """tool_choice "required" and a named function were read as "auto": the model could answer in text (LangChain's
    with_structured_output(method="function_calling") relies on the named choice)."""
    client = server.openai()
    clock = {"type": "function", "function": {"name": "get_time", "description": "The time in a time zone.",
                                              "parameters": {"type": "object", "properties": {
                                                  "zone": {"type": "string"}}, "required": ["zone"]}}}
    hello = [{"role": "user", "content": "Say hello to Anna."}]
    for model, choice, name in ((QWEN, "required", None), (SMOL, "required", None),
                                (QWEN, {"type": "function", "function": {"name": "get_time"}}, "get_time")):
        reply = client.chat.completions.create(model=model, messages=hello, tools=[WEATHER, clock],  # type: ignore[arg-type, list-item]
                                               tool_choice=choice, max_tokens=64, temperature=0)  # type: ignore[arg-type]
        choice_ = reply.choices[0]
        assert choice_.finish_reason == "tool_calls" and choice_.message.tool_calls, (model, choice, choice_)
        call = choice_.message.tool_calls[0].function  # type: ignore[union-attr]
        assert call.name in ({name} if name else {"get_weather", "get_time"})
        args = json.loads(call.arguments)
        assert set(args) == ({"city"} if call.name == "get_weather" else {"zone"}), args
    with pytest.raises(openai.BadRequestError, match="not among 'tools'"):
        client.chat.completions.create(model=SMOL, messages=hello, tools=[WEATHER], max_tokens=8,  # type: ignore[arg-type, list-item]
                                       tool_choice={"type": "function", "function": {"name": "nope"}})


def test_openai_sdk_fill_in_the_middle(server: Server) -> None:
    client = server.openai()
    middle = client.completions.create(model=QWEN, prompt="def add(a, b):\n    return ", max_tokens=12,
                                       suffix="\n\nprint(add(1, 2))\n", temperature=0).choices[0].text
    assert middle.replace(" ", "").startswith("a+b"), middle  # the middle, not a continuation of the whole file
    with pytest.raises(openai.BadRequestError, match="fill-in-the-middle"):
        client.completions.create(model=SMOL, prompt="def f(", suffix=")", max_tokens=4)


def test_openai_sdk_embeddings(server: Server) -> None:
    client = server.openai()
    passage = client.embeddings.create(model=E5, input=["annual leave is 25 days"]).data[0].embedding
    query = client.embeddings.create(model=f"{E5}:query", input=["annual leave is 25 days"]).data[0].embedding
    assert len(passage) == len(query) == 384 and passage != query
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input=["x"])


# -- LangChain ---------------------------------------------------------------------------------------------------


def test_langchain_chat_openai(server: Server) -> None:
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel, Field

    llm = ChatOpenAI(model=SMOL, base_url=server.base, api_key=server.key, temperature=0, max_tokens=16,  # type: ignore[arg-type]
                     http_client=server.http(), max_retries=0)
    assert "paris" in str(llm.invoke("What is the capital of France? One word.").content).lower()
    assert "".join(str(c.content) for c in llm.stream("Count to three.")).strip()

    class City(BaseModel):
        name: str = Field(max_length=40)  # bounded in the grammar too
        country: str = Field(max_length=40)

    structured = ChatOpenAI(model=QWEN, base_url=server.base, api_key=server.key, temperature=0, max_tokens=100,  # type: ignore[arg-type]
                            http_client=server.http(), max_retries=0).with_structured_output(City, method="json_schema")
    city = structured.invoke("Paris is the capital of France. Give the city and its country.")
    assert isinstance(city, City) and city.name

    responses = ChatOpenAI(model=SMOL, base_url=server.base, api_key=server.key, temperature=0, max_tokens=16,  # type: ignore[arg-type]
                           http_client=server.http(), max_retries=0, use_responses_api=True)
    assert "paris" in responses.invoke("What is the capital of France? One word.").text.lower()
    assert "".join(c.text for c in responses.stream("Count to three.")).strip()

    tooled = ChatOpenAI(model=QWEN, base_url=server.base, api_key=server.key, temperature=0, max_tokens=64,  # type: ignore[arg-type]
                        http_client=server.http(), max_retries=0).bind_tools([WEATHER])
    msg = tooled.invoke("What is the weather in Paris right now?")
    assert msg.tool_calls and msg.tool_calls[0]["name"] == "get_weather"  # type: ignore[attr-defined]


def test_langchain_inhouse_classes(server: Server) -> None:
    from inhouse.integrations.langchain import ChatInhouse, InhouseEmbeddings, InhouseRetriever

    chat = ChatInhouse(model=SMOL, base_url=server.base, api_key=server.key, temperature=0, max_tokens=48,
                       knowledge={"collections": ["hr"]}, http_client=server.http(), max_retries=0)
    question = "How many days of paid annual leave does an employee get per year?"
    answer = chat.invoke(question)
    assert isinstance(answer.response_metadata["citations"], list)
    assert answer.response_metadata["knowledge"] == {"collections": ["hr"]}
    streamed = None
    for chunk in chat.stream(question):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed is not None and isinstance(streamed.response_metadata["citations"], list)

    docs = InhouseRetriever(base_url=server.base, api_key=server.key, collections=["hr"]).invoke(
        "annual leave days")
    assert docs and "25 days" in docs[0].page_content and docs[0].metadata["collection_id"]
    emb = InhouseEmbeddings(base_url=server.base, api_key=server.key, http_client=server.http())
    (doc_vec,) = emb.embed_documents([LEAVE])
    query_vec = emb.embed_query("How much annual leave do I get?")
    assert len(doc_vec) == len(query_vec) == 384 and doc_vec != query_vec


def test_embeddings_from_the_models_own_token_ids(server: Server) -> None:
    """Token ids are multilingual-e5-small's own (kb/e5_tokenizer.py): they embed exactly like their text. LangChain's
    OpenAIEmbeddings must send text (check_embedding_ctx_length=False, as InhouseEmbeddings does): by default it sends
    ids of OpenAI's tokenizer, which no server can tell apart from this model's (docs/clients.md)."""
    from langchain_openai import OpenAIEmbeddings

    plain = OpenAIEmbeddings(model=E5, base_url=server.base, api_key=server.key, check_embedding_ctx_length=False,  # type: ignore[arg-type]
                             http_client=server.http(), max_retries=0)
    by_text = plain.embed_documents(["hello world"])[0]
    client = server.openai()
    by_ids = client.embeddings.create(model=E5, input=[[33600, 31, 8999]]).data[0].embedding  # e5's "hello world"
    assert sum(a * b for a, b in zip(by_text, by_ids, strict=True)) > 0.9999
    r = server.post("/embeddings", {"model": E5, "input": [[0, 33600, 2, 31]]})  # <s>/</s> inside: no text's ids
    assert r.status_code == 400 and "check_embedding_ctx_length=False" in r.json()["error"]["message"]


# -- LlamaIndex and litellm ----------------------------------------------------------------------------------


def test_llamaindex_openai_like(server: Server) -> None:
    from llama_index.core.llms import ChatMessage
    from llama_index.embeddings.openai_like import OpenAILikeEmbedding
    from llama_index.llms.openai_like import OpenAILike

    llm = OpenAILike(model=SMOL, api_base=server.base, api_key=server.key, is_chat_model=True, temperature=0,
                     max_tokens=12, http_client=server.http(), max_retries=0)
    reply = llm.chat([ChatMessage(role="user", content="What is the capital of France? One word.")])
    assert "paris" in str(reply.message.content).lower()
    assert "".join(r.delta or "" for r in llm.stream_complete("The capital of France is")).strip()
    embed = OpenAILikeEmbedding(model_name=E5, api_base=server.base, api_key=server.key, http_client=server.http())
    assert len(embed.get_text_embedding("hello")) == 384


def test_litellm(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of its price list from the internet
    import litellm

    reply = litellm.completion(model=f"openai/{SMOL}", api_base=server.base, api_key=server.key, temperature=0,
                               max_tokens=12, messages=[{"role": "user",
                                                         "content": "What is the capital of France? One word."}])
    assert "paris" in reply.choices[0].message.content.lower()
    chunks = litellm.completion(model=f"openai/{SMOL}", api_base=server.base, api_key=server.key, max_tokens=8,
                                stream=True, messages=[{"role": "user", "content": "Say hi."}])
    assert "".join(c.choices[0].delta.content or "" for c in chunks).strip()
    vec = litellm.embedding(model=f"openai/{E5}", api_base=server.base, api_key=server.key, input=["hello"])
    assert len(vec.data[0]["embedding"]) == 384


def test_every_answer_validated(server: Server) -> None:
    """Runs last in this module: the hook saw every route the clients used."""
    assert {"/chat/completions", "/completions", "/responses", "/embeddings", "/models/{model}"} <= set(
        server.validated.checked), server.validated.checked
