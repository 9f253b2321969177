/* commands.h — the CLI's subcommands as one X-macro list: NBL_CMD(name, function, help).
 * Each function lives in cli/cmd_<name>.c (or cli/nbl.c) as int fn(int argc, char **argv),
 * with argv[0] the subcommand name. Add a line here to add a command. */
NBL_CMD(info, cmd_info, "show a model's metadata and tensors: nbl info MODEL")
NBL_CMD(run, cmd_run, "generate: nbl run -m MODEL (--tokens 1,2,3 | -p TEXT) -n N")
NBL_CMD(synth, cmd_synth, "write a random-weight model with a real model's shapes: nbl synth NAME -t TYPE -o OUT.gguf")
NBL_CMD(convert, cmd_convert, "convert a Hugging Face checkpoint to GGUF: nbl convert HF_DIR -o OUT.gguf [--type f16|bf16|f32]")
NBL_CMD(chat, cmd_chat, "interactive chat that keeps the conversation in the KV cache: nbl chat -m MODEL")
NBL_CMD(quantize, cmd_quantize, "requantize a model: nbl quantize IN.gguf OUT.gguf --type TYPE [--imatrix FILE]")
NBL_CMD(imatrix, cmd_imatrix, "calibrate: nbl imatrix -m MODEL -f TEXT -o OUT.gguf")
NBL_CMD(perplexity, cmd_perplexity, "quality: nbl perplexity -m MODEL -f TEXT [--kl-base BASE]")
NBL_CMD(gpu_plan, cmd_gpu_plan, "write a model's WebGPU plan as JSON for web/gpu.js: nbl gpu_plan -m MODEL [-o OUT.json]")
NBL_CMD(bench, cmd_bench, "speed like llama-bench: nbl bench -m MODEL [-p 128] [-n 64] [-t THREADS] [-r REPS]")
NBL_CMD(tokenize, cmd_tokenize, "show token ids and pieces: nbl tokenize -m MODEL [--special] [--ids] (TEXT | --stdin)")
NBL_CMD(title, cmd_title, "a conversation title (helper task): nbl title -m MODEL --messages FILE.json [--words N]")
NBL_CMD(replies, cmd_replies, "quick replies as a JSON array: nbl replies -m MODEL --messages FILE.json [-n N]")
NBL_CMD(memory, cmd_memory, "facts worth remembering as JSON: nbl memory -m MODEL --messages FILE.json [--existing FILE.json]")
NBL_CMD(route, cmd_route, "classify a request among routes: nbl route -m MODEL --routes FILE.json MESSAGE")
NBL_CMD(task_eval, cmd_task_eval, "helper-task quality and latency on a labelled set: nbl task_eval -m MODEL DATA.jsonl")
