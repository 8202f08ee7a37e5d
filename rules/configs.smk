# Per-stage resolved config files: a stage's input, so editing one section reruns only that
# stage and its descendants.


rule shared_config:
    output:
        "results/configs/{section}.json",
    log:
        "logs/config/{section}.log",
    wildcard_constraints:
        section="|".join(ctrg.config.SHARED_SECTIONS),
    params:
        content=section_config,
    run:
        ctrg.config.write_section(config, wildcards.section, output[0])


rule run_config:
    output:
        "results/{run}/configs/{section}.json",
    log:
        "logs/{run}/config/{section}.log",
    wildcard_constraints:
        section="|".join(
            s for s in ctrg.config.SECTIONS if s not in ctrg.config.SHARED_SECTIONS
        ),
    params:
        content=section_config,
    run:
        ctrg.config.write_section(run_settings(wildcards), wildcards.section, output[0])
