distill.py --arch resnet20 --epochs 6 --batch-size 128 --teacher runs/cpu/teacher/s0/model.pt --seed 3 
